"""Production facts derived at the edge: machine state intervals, part counts, shift
KPIs (ISO 22400) and order progress (issue 21). See docs/production.md."""
