"""Pure consensus rules (PROTOCOL §4-§5.3); see docs/consensus.md for the API and the decisions.

Modules: `election` (VDF challenge, eligibility, ranks, rank timing), `validation` (`ChainView`,
header and block validation in §4.7 order), `body` (stateless body rules), `certificate`
(attestations, certificates, threshold), `finality` (justification, 2-chain finality, voting rule),
`forkchoice` (head choice, final bookkeeping), `duties` (what a validator should do now),
`slashing` (evidence), `rewards` and `reputation` (state engineer's). Nothing here imports trio,
plyvel, libp2p, torch or `vdf`, or reads the clock.
"""
