"""Azure Resource Manager: the managed cluster's service mesh (``AksMeshApi``)."""
