"""Query engines of an island. Each runs a planned query over the partition files the planner
chose and returns an Arrow schema and an iterator of record batches; ``cancel`` stops it."""

from island.engines.arrow import ArrowEngine
from island.engines.base import Execution
from island.engines.spark import SparkEngine

__all__ = ["ArrowEngine", "SparkEngine", "Execution"]
