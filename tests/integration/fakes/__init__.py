"""Fake provider peers on loopback for the providers that publish no OpenAPI document a mock could serve.

Each fake enforces the request shapes its provider documents (auth headers, required fields, limits) and
refuses the rest the way the provider does, and signs the webhooks it posts the way the provider signs them.
"""
