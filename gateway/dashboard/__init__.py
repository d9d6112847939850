"""The backend's production dashboard (issue 21): docs/production.md#the-dashboard."""
