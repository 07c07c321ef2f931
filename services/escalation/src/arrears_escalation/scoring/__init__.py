"""The model's scores in escalation (issue #20): the latest score per account, the recovery team's
assignment of high-risk accounts (rules trigger `account_scored`) and the work list's order by expected
recovery."""
