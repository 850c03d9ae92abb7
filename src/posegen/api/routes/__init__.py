"""One router per area; ``posegen.api.app`` includes them under the API prefix."""
