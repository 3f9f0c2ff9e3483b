"""Where a run executes besides this process: ``ray`` (an optional extra; nothing else imports Ray)."""
