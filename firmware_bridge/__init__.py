"""Everything that talks to a sensor or stands in for one."""

from .block import Block
from .source import SOURCE_KINDS, Source, open_source

__all__ = ["SOURCE_KINDS", "Block", "Source", "open_source"]
