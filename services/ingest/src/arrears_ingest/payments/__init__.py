"""Payments: signed webhooks (Stripe-style and Standard Webhooks) that update an account at once."""
