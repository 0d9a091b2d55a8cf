"""The project's models: named deployments, the connections they go through, and the local model.

`upstreams.Upstream` is where the two halves meet: the catalog (deployments and connections, in the
store) resolves a deployment name to one, and the inference gateway sends the request there.
"""
