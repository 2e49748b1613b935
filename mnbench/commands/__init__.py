"""The subcommands, in the order ``mnbench --help`` lists them."""

from .models import info, models

COMMANDS = [models, info]
