"""Alias of :mod:`rnnedge.deploy` (Raspberry Pi bundles): ``deploy`` and ``verify``."""
from rnnedge.deploy import PI_OS, RUNTIMES, DeployResult, VerifyReport, deploy, requirements_for, verify

__all__ = ["deploy", "verify", "DeployResult", "VerifyReport", "RUNTIMES", "PI_OS", "requirements_for"]
