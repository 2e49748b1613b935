"""The subcommands, in the order ``mnbench --help`` lists them."""

from .accuracy import evaluate, finetune
from .bench import bench
from .compare import ab, compare, report
from .device import device, devices, parse
from .export import export, inspect
from .history import history
from .models import info, models
from .profile import profile

COMMANDS = [models, info, export, inspect, bench, profile, compare, ab, report, devices, device, parse,
            finetune, evaluate, history]
