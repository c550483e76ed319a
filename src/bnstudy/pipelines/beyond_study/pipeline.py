"""Wiring of ``beyond_study``: four more models, trained and measured exactly as the study's
pair, then compared with it; run it after ``full_study`` (it reads the pair's outputs).

- training: the ``training`` template in the namespaces ``candidate_noisy``, ``candidate_l1``,
  ``candidate_l2``, ``candidate_linf`` (parameters_beyond.yml);
- analysis: each variant against no BN and against BN, the noise question, the Lp table,
  and every model's curvature against the stability thresholds;
- reporting: three figures and ``beyond_report.md`` / ``.html``.
"""

import warnings

from kedro.pipeline import Node, Pipeline

from bnstudy.errors import ParameterError
from bnstudy.pipelines.beyond_study import nodes
from bnstudy.pipelines.training.pipeline import namespaced
from bnstudy.roster import pipeline_roster

# This pipeline reads every model's namespaced outputs by their full names.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")


def _each(*datasets: str) -> list[str]:
    return [f"{model}.{dataset}" for model in nodes.MODELS for dataset in datasets]


def create_pipeline(**kwargs) -> Pipeline:
    roster = pipeline_roster()
    missing = [model for model in nodes.MODELS if model not in roster.compared_in("beyond_study")]
    if missing:
        raise ParameterError(
            f"studies.beyond_study lacks {missing}: its questions (the noise question, the Lp "
            f"table) read {list(nodes.MODELS)}. Keep beyond_study's models as in "
            "conf/base/parameters_roster.yml, or declare a study of your own.")
    analysis = [
        Node(func=nodes.check_models, inputs=_each("run_record"), outputs="beyond_models",
             name="check_beyond_models_node", tags=["analysis", "beyond"]),
        Node(func=nodes.compare_variants,
             inputs=["beyond_models", "model_comparisons_summary", "params:analysis",
                     "params:studies.beyond_study.comparisons", *_each(*nodes.COMPARED_TRACES)],
             outputs="variant_comparisons_summary", name="compare_variants_node",
             tags=["analysis", "beyond"]),
        Node(func=nodes.noisy_shift,
             inputs=["baseline.activation_histograms", "candidate.activation_histograms",
                     "candidate_noisy.activation_histograms"],
             outputs="noisy_shift_table", name="analyze_noisy_shift_node",
             tags=["analysis", "beyond"]),
        Node(func=nodes.normalization_curves,
             inputs=["params:analysis", *_each("training_trace", "eval_trace")],
             outputs="normalization_curves_table", name="analyze_normalization_curves_node",
             tags=["analysis", "beyond"]),
        Node(func=nodes.analyze_curvature,
             inputs=["candidate.run_record", "params:beyond", *_each("curvature_trace")],
             outputs=["curvature_table", "curvature_summary"], name="analyze_curvature_node",
             tags=["analysis", "beyond"]),
    ]
    reporting = [
        Node(func=nodes.plot_noisy_shift, inputs=["noisy_shift_table", "params:reporting"],
             outputs="noisy_shift_figure", name="plot_noisy_shift_node",
             tags=["reporting", "beyond"]),
        Node(func=nodes.plot_normalizations, inputs="normalization_curves_table",
             outputs="normalizations_figure", name="plot_normalizations_node",
             tags=["reporting", "beyond"]),
        Node(func=nodes.plot_curvature, inputs=["curvature_table", "curvature_summary"],
             outputs="curvature_figure", name="plot_curvature_node",
             tags=["reporting", "beyond"]),
        Node(func=nodes.write_beyond_report,
             inputs=["variant_comparisons_summary", "curvature_summary", "cifar10_provenance",
                     "params:preprocessing", "params:reporting", *_each("run_record"),
                     "noisy_shift_figure", "normalizations_figure", "curvature_figure"],
             outputs=["beyond_report_md", "beyond_report_html", "beyond_metrics"],
             name="write_beyond_report_node", tags=["reporting", "beyond"]),
    ]
    return namespaced(roster.trained_by("beyond_study")) + Pipeline(analysis + reporting)
