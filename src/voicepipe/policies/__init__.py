"""Turn logic: free conversation, or filling in a form."""

from voicepipe.policies.base import Policy, PolicyContext, Reply
from voicepipe.policies.conversation import ConversationPolicy

__all__ = ["ConversationPolicy", "Policy", "PolicyContext", "Reply"]
