// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IVerification} from "./interfaces/IVerification.sol";
import {ISNM} from "./interfaces/ISNM.sol";

/// @title Verification
/// @notice Miner stakes and majority resolution of conflicting results (see IVerification).
/// @dev A strict majority of the declared replica count is unique, so leaving attestations
///      out of a challenge can never flip the outcome, only make it fail. Miners sign the
///      replica count with their digest, which pins it for the unit.
contract Verification is IVerification, EIP712 {
    bytes32 private constant RESULT_TYPEHASH =
        keccak256("Result(address hub,bytes32 unit,uint16 replicas,bytes32 digest)");
    uint256 private constant BPS = 10_000;

    struct StakeInfo {
        uint128 amount;
        uint64 unlockAt;
    }

    /// @inheritdoc IVerification
    address public immutable token;
    /// @inheritdoc IVerification
    address public immutable dao;
    /// @inheritdoc IVerification
    uint256 public immutable unbondingPeriod;
    /// @inheritdoc IVerification
    uint256 public immutable proverShareBps;

    mapping(address => StakeInfo) private _stakes;
    /// @inheritdoc IVerification
    mapping(bytes32 => bool) public resolved;

    constructor(address token_, address dao_, uint256 unbondingPeriod_, uint256 proverShareBps_)
        EIP712("sosna-verification", "1")
    {
        if (proverShareBps_ > BPS) revert InvalidConfig();
        token = token_;
        dao = dao_;
        unbondingPeriod = unbondingPeriod_;
        proverShareBps = proverShareBps_;
    }

    /// @inheritdoc IVerification
    function stake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        StakeInfo storage s = _stakes[msg.sender];
        if (s.unlockAt != 0) revert Unbonding(s.unlockAt);
        s.amount += SafeCast.toUint128(amount);
        ISNM(token).transferFrom(msg.sender, address(this), amount);
        emit Staked(msg.sender, amount, s.amount);
    }

    /// @inheritdoc IVerification
    function startUnbonding() external {
        StakeInfo storage s = _stakes[msg.sender];
        if (s.amount == 0) revert NoStake();
        if (s.unlockAt != 0) revert Unbonding(s.unlockAt);
        uint64 unlockAt = SafeCast.toUint64(block.timestamp + unbondingPeriod);
        s.unlockAt = unlockAt;
        emit UnbondingStarted(msg.sender, unlockAt);
    }

    /// @inheritdoc IVerification
    function withdraw() external {
        StakeInfo memory s = _stakes[msg.sender];
        if (s.unlockAt == 0 || block.timestamp < s.unlockAt) revert NotUnlocked(s.unlockAt);
        delete _stakes[msg.sender];
        if (s.amount != 0) ISNM(token).transfer(msg.sender, s.amount);
        emit StakeWithdrawn(msg.sender, s.amount);
    }

    /// @inheritdoc IVerification
    function challenge(
        address hub,
        bytes32 unit,
        uint16 replicas,
        Attestation[] calldata attestations
    ) external {
        uint256 n = attestations.length;
        if (n < 2 || n > replicas) revert BadAttestationCount();
        bytes32 key = unitKey(hub, unit);
        if (resolved[key]) revert AlreadyResolved(key);

        // Authenticate every attestation and find the digest a strict majority signed.
        address prev;
        bytes32 winner;
        uint256 winnerVotes;
        for (uint256 i; i < n; ++i) {
            Attestation calldata a = attestations[i];
            if (a.miner <= prev) revert UnsortedMiners(i);
            prev = a.miner;
            bytes32 h = resultHash(hub, unit, replicas, a.digest);
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(h, a.signature);
            if (err != ECDSA.RecoverError.NoError || signer != a.miner) revert BadSignature(i);
            if (winnerVotes == 0 || a.digest != winner) {
                uint256 votes = _count(attestations, a.digest);
                if (votes > winnerVotes) (winner, winnerVotes) = (a.digest, votes);
            }
        }
        if (winnerVotes * 2 <= replicas || winnerVotes == n) revert NoMajority();

        resolved[key] = true;
        emit DisputeResolved(key, hub, unit, winner, msg.sender);
        uint256 rewards;
        uint256 slashed;
        for (uint256 i; i < n; ++i) {
            if (attestations[i].digest == winner) continue;
            address miner = attestations[i].miner;
            uint256 amount = _stakes[miner].amount;
            if (amount == 0) continue;
            _stakes[miner].amount = 0;
            uint256 reward = amount * proverShareBps / BPS;
            rewards += reward;
            slashed += amount;
            emit Slashed(miner, key, amount, reward);
        }
        if (rewards != 0) ISNM(token).transfer(msg.sender, rewards);
        if (slashed > rewards) ISNM(token).transfer(dao, slashed - rewards);
    }

    /// @inheritdoc IVerification
    function stakeOf(address miner) external view returns (uint256 amount, uint256 unlockAt) {
        StakeInfo memory s = _stakes[miner];
        return (s.amount, s.unlockAt);
    }

    /// @inheritdoc IVerification
    function resultHash(address hub, bytes32 unit, uint16 replicas, bytes32 digest)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(RESULT_TYPEHASH, hub, unit, replicas, digest)));
    }

    /// @inheritdoc IVerification
    function unitKey(address hub, bytes32 unit) public pure returns (bytes32) {
        return keccak256(abi.encode(hub, unit));
    }

    function _count(Attestation[] calldata attestations, bytes32 digest)
        private
        pure
        returns (uint256 votes)
    {
        for (uint256 i; i < attestations.length; ++i) {
            if (attestations[i].digest == digest) ++votes;
        }
    }
}
