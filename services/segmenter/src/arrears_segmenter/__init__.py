"""Segmenter: aging, dunning policy, durable timers and the compliance gate -> notice-due.

Layers, bottom to top. A module imports from its own layer and the layers below it, never from one above,
and imports never go round in a circle (tests/segmenter/test_layers.py reads this list and checks every
import, those inside functions too):

1. core:     settings, aging, segments, bulk, sealing, schedule.models, payments.metrics
2. models:   accounts.models, accounts.account, timers.models, campaigns.models, payments.models,
             nextsteps.models, scores.models
3. rules:    accounts.projection, accounts.terms, schedule.planner, timers.firing, overrides.actions, deps,
             scores.choice, preferences.window
4. services: accounts.store, accounts.handlers, accounts.service, approvals.service, campaigns.service,
             schedule.store, schedule.service, timers.planning, timers.service, overrides.service, simulate,
             payments.notices, payments.retries, payments.confirmations, payments.flows,
             nextsteps.service, scores.service, scores.handlers, accounts.stops
5. entry:    *.views, timers.scheduled, consumer, topology, __main__

core: utilities (set-based writes, personal data sealed with the vault) and the policy schema (nothing of
the segmenter's own); models: the tables, the typed `Account` and the API bodies; rules: pure decisions over
an account (no I/O) and the runtime configuration; services: plain async functions over a connection; entry:
the HTTP routers, the timer loop, the consumer and the process. A domain folder (accounts/, timers/, ...) holds modules of several layers.
"""
