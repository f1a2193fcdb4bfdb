"""The paper's tables and figures as run grids (one YAML each), expanded, validated and dispatched."""
