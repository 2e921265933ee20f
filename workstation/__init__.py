"""The workstation: audit, repair and release reward models, offline.

The core package (everything outside ``workstation.ui``) imports no Qt and
does not import torch at start-up: training and the encoder's one-time conversion
import it inside the functions that need it.
"""

__version__ = "0.1.0"
