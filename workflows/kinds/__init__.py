"""The built-in workflow kinds, registered once (see :mod:`workflows.kind`).

Adding a kind is a new module here and one line below.
"""

from __future__ import annotations

from workflows.kind import KINDS
from workflows.kinds.campaign import Campaign
from workflows.kinds.disable import Disable
from workflows.kinds.enable import Enable
from workflows.kinds.ingress import Ingress
from workflows.kinds.rollover import Rollover
from workflows.kinds.upgrade import Upgrade

KINDS.register(Upgrade(), Rollover(), Enable(), Ingress(), Disable(), Campaign())
