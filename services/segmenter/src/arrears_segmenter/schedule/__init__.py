"""Dunning policy code: the policy schema and its YAML parsing (models), which step is next and when
(planner), versions in Postgres (store), loading a version and re-planning (service) and the `/policies` HTTP
API (views). The policy documents themselves (data, not code) are in `arrears_segmenter/policies/`."""
