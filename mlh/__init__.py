"""mlh: machine-learned DFT Hamiltonians and the physics built on them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlh")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
