from .env import setup_cpu_env

__all__ = ["setup_cpu_env"]
