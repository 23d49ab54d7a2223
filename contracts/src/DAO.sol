// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IDAO} from "./interfaces/IDAO.sol";
import {HubFactory} from "./HubFactory.sol";
import {IHubWallet} from "./interfaces/IHubWallet.sol";
import {ISNM} from "./interfaces/ISNM.sol";
import {IWhitelist} from "./interfaces/IWhitelist.sol";

/// @title DAO
/// @notice Token-weighted votes on hub actions (see IDAO).
/// @dev Votes are escrowed rather than snapshotted: moving tokens after voting cannot
///      count them twice, and the token needs no checkpointing on every transfer.
///      The DAO deploys the HubFactory (which deploys the Whitelist), so the registry it
///      governs is fixed at construction without precomputed addresses or setters.
contract DAO is IDAO {
    /// @inheritdoc IDAO
    address public immutable token;
    /// @inheritdoc IDAO
    address public immutable whitelist;
    /// @inheritdoc IDAO
    address public immutable factory;
    /// @inheritdoc IDAO
    uint256 public immutable votingPeriod;
    /// @inheritdoc IDAO
    uint256 public immutable quorum;

    Proposal[] private _proposals;
    mapping(uint256 => mapping(address => uint256)) private _deposits;
    /// @dev SNM held for votes; the rest of the balance is treasury.
    uint256 private _escrowed;

    constructor(address token_, uint256 votingPeriod_, uint256 quorum_) {
        token = token_;
        HubFactory f = new HubFactory(token_, address(this));
        factory = address(f);
        whitelist = f.whitelist();
        votingPeriod = votingPeriod_;
        quorum = quorum_;
    }

    /// @inheritdoc IDAO
    function propose(Action action, address hub) external returns (uint256 id) {
        if (hub == address(0)) revert InvalidArgument();
        id = _proposals.length;
        uint40 endsAt = SafeCast.toUint40(block.timestamp + votingPeriod);
        _proposals.push(Proposal(action, hub, msg.sender, endsAt, false, 0, 0));
        emit ProposalCreated(id, msg.sender, action, hub, endsAt);
    }

    /// @inheritdoc IDAO
    function vote(uint256 id, bool support, uint256 weight) external {
        Proposal storage p = _get(id);
        if (block.timestamp >= p.endsAt) revert VotingClosed(p.endsAt);
        if (weight == 0) revert InvalidArgument();
        uint128 w = SafeCast.toUint128(weight);
        if (support) p.forVotes += w;
        else p.againstVotes += w;
        _deposits[id][msg.sender] += weight;
        _escrowed += weight;
        ISNM(token).transferFrom(msg.sender, address(this), weight);
        emit Voted(id, msg.sender, support, weight);
    }

    /// @inheritdoc IDAO
    function execute(uint256 id) external {
        Proposal storage p = _get(id);
        if (block.timestamp < p.endsAt) revert VotingOpen(p.endsAt);
        if (p.executed) revert AlreadyExecuted(id);
        if (!_passed(p)) revert NotPassed(p.forVotes, p.againstVotes, quorum);
        p.executed = true;
        Action a = p.action;
        address hub = p.hub;
        if (a == Action.Suspect) IHubWallet(hub).suspect();
        else if (a == Action.Rehab) IHubWallet(hub).rehab();
        else if (a == Action.Gulag) IHubWallet(hub).gulag();
        else if (a == Action.Trust) IWhitelist(whitelist).setTrusted(hub, true);
        else if (a == Action.Untrust) IWhitelist(whitelist).setTrusted(hub, false);
        else IWhitelist(whitelist).deregister(hub);
        emit ProposalExecuted(id);
    }

    /// @inheritdoc IDAO
    function reclaim(uint256 id) external {
        Proposal storage p = _get(id);
        if (block.timestamp < p.endsAt) revert VotingOpen(p.endsAt);
        uint256 amount = _deposits[id][msg.sender];
        if (amount == 0) revert InvalidArgument();
        _deposits[id][msg.sender] = 0;
        _escrowed -= amount;
        ISNM(token).transfer(msg.sender, amount);
        emit VotesReclaimed(id, msg.sender, amount);
    }

    /// @inheritdoc IDAO
    function proposal(uint256 id) external view returns (Proposal memory) {
        return _get(id);
    }

    /// @inheritdoc IDAO
    function deposit(uint256 id, address voter) external view returns (uint256) {
        return _deposits[id][voter];
    }

    /// @inheritdoc IDAO
    function passed(uint256 id) external view returns (bool) {
        Proposal storage p = _get(id);
        return block.timestamp >= p.endsAt && _passed(p);
    }

    /// @inheritdoc IDAO
    function proposalCount() external view returns (uint256) {
        return _proposals.length;
    }

    /// @inheritdoc IDAO
    function treasury() external view returns (uint256) {
        return ISNM(token).balanceOf(address(this)) - _escrowed;
    }

    function _passed(Proposal storage p) private view returns (bool) {
        uint256 f = p.forVotes;
        uint256 ag = p.againstVotes;
        return f > ag && f + ag >= quorum;
    }

    function _get(uint256 id) private view returns (Proposal storage) {
        if (id >= _proposals.length) revert UnknownProposal(id);
        return _proposals[id];
    }
}
