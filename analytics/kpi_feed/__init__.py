"""KPI feed: computes KPIs per machine and line and writes them back to the store as series."""
