"""Worker plugins shared by the Dask tests and ``benchmarks/bench_distributed.py``.

Callers ship this module to the workers by value
(``cloudpickle.register_pickle_by_value``), since worker processes need not be able to
import it.
"""

from distributed import WorkerPlugin


class CountModelLoads(WorkerPlugin):
    """Counts real checkpoint loads in a worker process (calls straight through).

    The count is ``worker.sklearn_albert_model_loads["count"]``.
    """

    name = "count-model-loads"

    def setup(self, worker):
        from transformers import PreTrainedModel

        loads = {"count": 0}
        original = PreTrainedModel.from_pretrained.__func__

        def counting_from_pretrained(cls, *args, **kwargs):
            loads["count"] += 1
            return original(cls, *args, **kwargs)

        PreTrainedModel.from_pretrained = classmethod(counting_from_pretrained)
        worker.sklearn_albert_model_loads = loads
