"""Building blocks written once and shared by every architecture."""
