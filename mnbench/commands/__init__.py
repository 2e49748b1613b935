"""The subcommands, in the order ``mnbench --help`` lists them."""

from .export import export, inspect
from .models import info, models

COMMANDS = [models, info, export, inspect]
