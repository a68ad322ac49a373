"""``python -m unimo.predict caption|vqa|ve|retrieve ...`` (see :mod:`unimo.predict.cli`)."""
import unimo  # noqa: F401  (CPU environment before paddle)

from unimo.predict.cli import main

if __name__ == "__main__":
    main()
