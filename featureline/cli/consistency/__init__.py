"""Online/offline consistency, measured: per feature, the share of sampled entities whose
served value differs from (mismatch), lacks (missing) or has no counterpart in
(extra) the value historical retrieval computes at the same instant.

    from featureline.cli.consistency import check_consistency, format_table, write_report
    report = check_consistency(settings, sample=1000)
    print(format_table(report)); write_report(report, Path("reports"))
"""

from featureline.cli.consistency.compare import FeatureAgreement, compare_feature, same_value
from featureline.cli.consistency.render import chart_svg, format_table, html_page, write_report
from featureline.cli.consistency.run import ConsistencyReport, check_consistency
from featureline.cli.consistency.sample import EntityGroup, feature_groups, sample_keys

__all__ = [
    "ConsistencyReport",
    "EntityGroup",
    "FeatureAgreement",
    "chart_svg",
    "check_consistency",
    "compare_feature",
    "feature_groups",
    "format_table",
    "html_page",
    "same_value",
    "sample_keys",
    "write_report",
]
