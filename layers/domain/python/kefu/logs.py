"""The one structured logger (Powertools). Kept apart from the protocol module so that functions
that parse no frames (authorizer, stream consumers) do not import pydantic at cold start."""

from aws_lambda_powertools import Logger

logger = Logger(service="kefu")
