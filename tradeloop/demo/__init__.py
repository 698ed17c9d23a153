"""``tradeloop demo``: the whole loop on one machine, on real bars, with no cluster.

Import → features → Feast → train → serve → stream → monitor → retrain → report, each stage
checkpointed in ``HOME/demo/stages.json`` so a re-run skips what finished and a crashed run
resumes where it stopped.
"""

from tradeloop.demo.context import DemoOptions, DemoStageFailed
from tradeloop.demo.run import reset_home, run_demo

__all__ = ["DemoOptions", "DemoStageFailed", "reset_home", "run_demo"]
