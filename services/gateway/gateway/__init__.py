"""The e-SSC gateway: the one public door of the cluster."""
