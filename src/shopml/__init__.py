"""shopml: rank, forecast and search one product catalog on GPUs.

Parts (each a subpackage; importing ``shopml`` imports none of their heavy dependencies):

- ``shopml.formats``  the schemas of the shared tables and their validating readers (user data)
- ``shopml.world``    seeded synthetic retail world
- ``shopml.jagged``   jagged tensors, feature-interaction kernels, jagged flash attention (Triton)
- ``shopml.rank``     click-through ranking over jagged behaviour histories
- ``shopml.forecast`` AR-MDN probabilistic demand forecasting
- ``shopml.visual``   VisNet visual search and recommendations
- ``shopml.serve``    one HTTP service over the trained artefacts
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shopml")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0"

__all__ = ["__version__"]
