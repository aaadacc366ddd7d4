"""trainscape: map where training converges, spikes and diverges across hyperparameter grids.

Importing it changes nothing global (JAX's dtypes and devices, the environment, matplotlib's
backend); `configure()` makes the settings the command line uses, when asked. The one
exception is the `trainscape` command's own process (`_command_process`).
"""

# first: before anything loads pyarrow (see the module)
from . import _command_process  # noqa: F401, I001
from .analysis.compare import compare, compare_dtypes
from .analysis.coord_check import coord_check
from .analysis.critical import critical_lr
from .analysis.divergence import divergence_table, label_counts
from .analysis.scaling import Scaling, scaling
from .errors import ConfigError, DataError, InputError
from .gradcheck import gradcheck
from .io.data import load_dataset
from .io.results import Results, load
from .nn.models import Model
from .nn.schedules import lr_at_step
from .runtime import configure
from .spec.schema import Experiment, parse
from .sweep.runner import run
from .sweep.zoom import Zoom, zoom
from .version import __version__
from .viz.explorer import explore

__all__ = [
    "run", "load", "load_dataset", "Results", "Model", "Experiment", "parse", "gradcheck",
    "divergence_table", "label_counts", "compare", "compare_dtypes", "critical_lr",
    "configure", "explore", "zoom", "Zoom", "lr_at_step", "coord_check", "scaling", "Scaling",
    "InputError", "ConfigError", "DataError", "__version__",
]
