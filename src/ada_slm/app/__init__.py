"""What a user touches: the command line, the live page, chatting with a run (floor 5)."""
