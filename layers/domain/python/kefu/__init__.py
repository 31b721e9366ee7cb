"""kefu: the domain package shared by every Lambda function (the domain layer)."""
