"""ARM resource bodies of the sandbox: a managedCluster as ARM returns it, after the REST
spec's ``ManagedClustersCreate_AzureServiceMesh`` example (``../shared/data/aks/arm/``).

The world keeps each cluster's body and changes it; the ARM emulator serves it. Both import
this module, which imports nothing of the sandbox.
"""

from __future__ import annotations

from typing import Any

PROVIDER = "Microsoft.ContainerService"


def cluster_body(sub: str, rg: str, name: str, location: str, k8s: str,
                 revisions: list[str] | None) -> dict[str, Any]:
    """A managedCluster as ARM returns it, after the REST spec's create example."""
    mesh: dict[str, Any] = {"mode": "Disabled"}
    if revisions:
        mesh = {"mode": "Istio", "istio": {
            "revisions": list(revisions),
            "components": {"ingressGateways": [], "egressGateways": []}}}
    return {
        "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/managedClusters/"
              f"{name}",
        "name": name,
        "type": f"{PROVIDER}/managedClusters",
        "location": location,
        "tags": {"environment": "sandbox"},
        "sku": {"name": "Base", "tier": "Standard"},
        "identity": {"type": "SystemAssigned",
                     "principalId": "00000000-0000-0000-0000-000000000001",
                     "tenantId": "00000000-0000-0000-0000-000000000002"},
        "properties": {
            "provisioningState": "Succeeded",
            "powerState": {"code": "Running"},
            "kubernetesVersion": k8s,
            "currentKubernetesVersion": k8s,
            "dnsPrefix": name,
            "fqdn": f"{name}-sandbox.hcp.{location}.azmk8s.io",
            "agentPoolProfiles": [{
                "name": "nodepool1", "type": "VirtualMachineScaleSets", "count": 3,
                "vmSize": "Standard_DS2_v2", "mode": "System", "osType": "Linux",
                "orchestratorVersion": k8s, "provisioningState": "Succeeded",
                "maxPods": 110}],
            "enableRBAC": True,
            "nodeResourceGroup": f"MC_{rg}_{name}_{location}",
            "networkProfile": {"networkPlugin": "azure", "networkPluginMode": "overlay",
                               "loadBalancerSku": "standard", "outboundType": "loadBalancer",
                               "podCidr": "10.244.0.0/16", "serviceCidr": "10.0.0.0/16",
                               "dnsServiceIP": "10.0.0.10"},
            "addonProfiles": {},
            "serviceMeshProfile": mesh,
        },
    }
