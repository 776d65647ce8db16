"""Adapters of the domain's RebalancingApi port, one module per Glider API version, over shared
HTTP mechanics (http.py) and client-side pacing (pacing.py)."""
