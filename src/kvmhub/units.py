"""Sizes as people read them. No imports: the fastest commands print sizes too."""


def format_size(n: int) -> str:
    """Human-readable binary size: 1536 -> '1.5K', 10737418240 -> '10G'."""
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text}{'' if unit == 'B' else unit}"
        value /= 1024
    return f"{n}"
