"""The 5G module beside the gateway: link quality and identity (issue 11)."""
