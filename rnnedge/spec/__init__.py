"""Model specs: schema (:mod:`.schema`), loading with clear errors (:mod:`.loader`), and the
semantic checks (:mod:`.check`: references, shapes, stacked-RNN rules). No TensorFlow here."""
from rnnedge.spec.loader import load_spec, preset_names, preset_path, read_spec_file, spec_from_dict  # noqa: F401
from rnnedge.spec.schema import Spec  # noqa: F401
