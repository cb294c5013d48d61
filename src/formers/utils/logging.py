"""transformers' `utils.logging` path: `from formers.utils import logging; logging.set_verbosity_error()`.

The implementation is `formers.logging_utils`; this module only gives it transformers' import path.
"""
from ..logging_utils import *  # noqa: F401,F403  (the public names are logging_utils.__all__)
from ..logging_utils import __all__  # noqa: F401
