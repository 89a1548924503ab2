"""HTTP surfaces besides the chat completions hot path (Responses, Messages, ...), one package each."""
