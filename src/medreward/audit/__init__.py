"""The reward audit: how a spec can be gamed, and how well it agrees with what a user cares about,
measured before any training (``medreward audit``, ``medreward compare``, ``medreward benchmark``;
docs/audit.md).

>>> from medreward.audit import run_probes, generate_cases
>>> report = run_probes("mcq", generate_cases("mcq", 20, seed=0), probes=["hedge_all"])
>>> report.result("hedge_all").verdict
'sound'
"""

from .agreement import AgreementReport, AgreementStat, agreement
from .benchmark import BenchmarkReport, PreferenceItem, build_preferences, read_preferences, run_benchmark
from .calibration import CalibrationReport, calibration
from .cases import generate_cases, gold_completion, load_cases, register_gold
from .corruptions import Corruption, register_corruption
from .exploit_search import ExploitSearchResult, Transformation, register_transformation, search_exploits
from .probes import Probe, ProbeReport, ProbeResult, register_probe, run_probes
from .run import AuditReport, run_audit
from .starc import StarcResult, starc_distance

__all__ = [
    "AgreementReport",
    "AgreementStat",
    "AuditReport",
    "BenchmarkReport",
    "CalibrationReport",
    "Corruption",
    "ExploitSearchResult",
    "PreferenceItem",
    "Probe",
    "ProbeReport",
    "ProbeResult",
    "StarcResult",
    "Transformation",
    "agreement",
    "build_preferences",
    "calibration",
    "generate_cases",
    "gold_completion",
    "load_cases",
    "read_preferences",
    "register_corruption",
    "register_gold",
    "register_probe",
    "register_transformation",
    "run_audit",
    "run_benchmark",
    "run_probes",
    "search_exploits",
    "starc_distance",
]
