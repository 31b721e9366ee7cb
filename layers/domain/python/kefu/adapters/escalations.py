"""Starts and stops ticket escalation runs on the Step Functions state machine (kefu.escalation).
Execution names are deterministic (tickets.execution_name), so a redelivered stream record starts
nothing twice and a run can be stopped by name."""

from __future__ import annotations

import json
import os

import boto3


class StepFunctionsEscalations:
    def __init__(self, state_machine_arn: str):
        self.state_machine_arn = state_machine_arn
        self._sfn = boto3.client("stepfunctions", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SFN")
                                 or os.environ.get("AWS_ENDPOINT_URL") or None)

    def execution_arn(self, name: str) -> str:
        # arn:aws:states:region:account:stateMachine:NAME -> arn:aws:states:region:account:execution:NAME:run
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"

    def start(self, name: str, payload: dict) -> bool:
        """False when a run of that name exists already (a redelivered record)."""
        try:
            self._sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                      input=json.dumps(payload, separators=(",", ":")))
        except self._sfn.exceptions.ExecutionAlreadyExists:
            return False
        return True

    def stop(self, name: str, cause: str) -> bool:
        """False when there is no such run or it has ended (its conditional updates stop it anyway)."""
        try:
            self._sfn.stop_execution(executionArn=self.execution_arn(name), cause=cause[:256])
        except self._sfn.exceptions.ExecutionDoesNotExist:
            return False
        except self._sfn.exceptions.ClientError as error:  # already ended: nothing to stop
            if "ExecutionNotRunning" in str(error) or "not running" in str(error).lower():
                return False
            raise
        return True
