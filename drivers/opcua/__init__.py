"""OPC UA driver (asyncua): polling and subscriptions, security, browse."""
