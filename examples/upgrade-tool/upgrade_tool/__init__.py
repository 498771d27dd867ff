"""A canary upgrade of a Huawei Cloud ASM mesh, driven through the official SDK."""

from upgrade_tool.api import AsmApi, AsmError
from upgrade_tool.upgrade import JobTimeout, Outcome, StepRun, Upgrader, UpgradeResult

__all__ = ["AsmApi", "AsmError", "JobTimeout", "Outcome", "StepRun", "UpgradeResult", "Upgrader"]
