"""Operations: export KPIs (`metrics`), retention of exports (`sweep`, `retention`)."""
