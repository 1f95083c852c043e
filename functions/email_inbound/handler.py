"""EmailInboundQueue (SQS, SES notifications via SNS): not built yet, so every record fails and is redriven to
EmailInboundDlq after maxReceiveCount, where nothing is lost."""


def lambda_handler(event, context):
    raise NotImplementedError("email_inbound is not built yet; records stay in the queue and then the DLQ")
