"""bert_ner_probe: which layers of a frozen encoder carry entity information?

Feature-based NER probing as in Devlin et al. (2019, §5.3, Table 7).
The Python API (:mod:`bert_ner_probe.api`): :func:`probe` runs one
configuration, :func:`load_results` reads the runs of a folder as a
DataFrame, :func:`layers` gives every layer's vectors of your sentences;
:class:`RunResult` is one run's results.
"""

from bert_ner_probe.version import __version__
from bert_ner_probe.api import layers, load_results, probe  # noqa: E402
from bert_ner_probe.results.run_result import RunResult  # noqa: E402

__all__ = ["probe", "load_results", "layers", "RunResult", "__version__"]
