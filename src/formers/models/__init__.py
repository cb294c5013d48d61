"""Model families; each subpackage holds a config and the classes that differ from the shared blocks."""
