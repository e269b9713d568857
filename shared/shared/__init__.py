"""e-SSC shared library: the code every service imports. It never imports a service."""
