"""The workstation: audit, repair and release reward models, offline.

The core package (everything outside ``workstation.ui``) imports no Qt and
does not import torch at start-up; training code imports torch lazily.
"""

__version__ = "0.1.0"
