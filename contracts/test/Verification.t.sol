// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "./base/Fixture.sol";
import {vm} from "./base/Vm.sol";
import {Verification} from "../src/Verification.sol";
import {IVerification} from "../src/interfaces/IVerification.sol";

contract VerificationTest is Fixture {
    uint256 internal constant STAKE = 10e18;
    uint16 internal constant REPLICAS = 3;
    bytes32 internal constant UNIT = keccak256("unit-1");
    bytes32 internal constant GOOD = sha256("good");
    bytes32 internal constant BAD = sha256("bad");

    address internal hub;
    address internal prover;
    address[] internal miners;
    uint256[] internal keys;

    function setUp() public override {
        super.setUp();
        hub = makeAddr("hub");
        prover = makeAddr("prover");
        for (uint256 i; i < 5; ++i) {
            (address m, uint256 k) = makeAccount(string.concat("vminer", vm.toString(i)));
            miners.push(m);
            keys.push(k);
        }
        // Sort by address so attestation lists can be built in miner order.
        for (uint256 i; i < 5; ++i) {
            for (uint256 j = i + 1; j < 5; ++j) {
                if (miners[j] < miners[i]) {
                    (miners[i], miners[j]) = (miners[j], miners[i]);
                    (keys[i], keys[j]) = (keys[j], keys[i]);
                }
            }
        }
        for (uint256 i; i < 5; ++i) {
            _stake(i, STAKE);
        }
    }

    function _stake(uint256 i, uint256 amount) internal {
        give(miners[i], amount);
        vm.startPrank(miners[i]);
        snm.approve(address(verification), amount);
        verification.stake(amount);
        vm.stopPrank();
    }

    function _att(uint256 i, bytes32 digest, uint16 replicas)
        internal
        view
        returns (IVerification.Attestation memory)
    {
        bytes32 h = verification.resultHash(hub, UNIT, replicas, digest);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[i], h);
        return IVerification.Attestation(miners[i], digest, abi.encodePacked(r, s, v));
    }

    function _three(bytes32 d0, bytes32 d1, bytes32 d2)
        internal
        view
        returns (IVerification.Attestation[] memory a)
    {
        a = new IVerification.Attestation[](3);
        a[0] = _att(0, d0, REPLICAS);
        a[1] = _att(1, d1, REPLICAS);
        a[2] = _att(2, d2, REPLICAS);
    }

    function _challenge(IVerification.Attestation[] memory a) internal {
        vm.prank(prover);
        verification.challenge(hub, UNIT, REPLICAS, a);
    }

    // ---- staking ----------------------------------------------------------------------------

    function test_stake_accumulates() public {
        give(miners[0], 5e18);
        vm.startPrank(miners[0]);
        snm.approve(address(verification), 5e18);
        vm.expectEmit(true, true, true, true, address(verification));
        emit IVerification.Staked(miners[0], 5e18, STAKE + 5e18);
        verification.stake(5e18);
        vm.stopPrank();
        (uint256 amount, uint256 unlockAt) = verification.stakeOf(miners[0]);
        assertEq(amount, STAKE + 5e18, "stake");
        assertEq(unlockAt, 0, "bonded");
        vm.expectRevert(IVerification.ZeroAmount.selector);
        verification.stake(0);
    }

    function test_unbonding_thenWithdraw() public {
        vm.startPrank(miners[0]);
        vm.expectRevert(abi.encodeWithSelector(IVerification.NotUnlocked.selector, 0));
        verification.withdraw();
        uint256 unlockAt = block.timestamp + UNBONDING;
        vm.expectEmit(true, true, true, true, address(verification));
        emit IVerification.UnbondingStarted(miners[0], unlockAt);
        verification.startUnbonding();
        vm.expectRevert(abi.encodeWithSelector(IVerification.Unbonding.selector, unlockAt));
        verification.startUnbonding();
        vm.expectRevert(abi.encodeWithSelector(IVerification.Unbonding.selector, unlockAt));
        verification.stake(1);
        vm.warp(unlockAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IVerification.NotUnlocked.selector, unlockAt));
        verification.withdraw();
        vm.warp(unlockAt);
        verification.withdraw();
        vm.stopPrank();
        assertEq(snm.balanceOf(miners[0]), STAKE, "unchallenged stake returned");
        (uint256 amount,) = verification.stakeOf(miners[0]);
        assertEq(amount, 0, "gone");
    }

    function test_startUnbonding_needsStake() public {
        vm.expectRevert(IVerification.NoStake.selector);
        vm.prank(prover);
        verification.startUnbonding();
    }

    // ---- challenges -------------------------------------------------------------------------

    function test_challenge_slashesMinorityAndRewardsProver() public {
        uint256 daoBefore = snm.balanceOf(address(dao));
        bytes32 key = verification.unitKey(hub, UNIT);
        IVerification.Attestation[] memory a = _three(GOOD, BAD, GOOD);
        vm.expectEmit(true, true, true, true, address(verification));
        emit IVerification.DisputeResolved(key, hub, UNIT, GOOD, prover);
        vm.expectEmit(true, true, true, true, address(verification));
        emit IVerification.Slashed(miners[1], key, STAKE, STAKE / 2);
        _challenge(a);
        (uint256 loser,) = verification.stakeOf(miners[1]);
        (uint256 winner,) = verification.stakeOf(miners[0]);
        assertEq(loser, 0, "slashed");
        assertEq(winner, STAKE, "winner untouched");
        assertEq(snm.balanceOf(prover), STAKE / 2, "prover share");
        assertEq(snm.balanceOf(address(dao)) - daoBefore, STAKE / 2, "rest to the DAO");
        assertTrue(verification.resolved(key), "resolved");
    }

    function test_challenge_slashesDuringUnbonding() public {
        vm.prank(miners[1]);
        verification.startUnbonding();
        _challenge(_three(GOOD, BAD, GOOD));
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(miners[1]);
        verification.withdraw();
        assertEq(snm.balanceOf(miners[1]), 0, "nothing left to withdraw");
    }

    function test_challenge_onlyOncePerUnit() public {
        IVerification.Attestation[] memory a = _three(GOOD, BAD, GOOD);
        bytes32 key = verification.unitKey(hub, UNIT);
        _challenge(a);
        vm.expectRevert(abi.encodeWithSelector(IVerification.AlreadyResolved.selector, key));
        _challenge(a);
    }

    function test_challenge_needsConflictAndStrictMajority() public {
        IVerification.Attestation[] memory same = _three(GOOD, GOOD, GOOD);
        vm.expectRevert(IVerification.NoMajority.selector);
        _challenge(same);
        IVerification.Attestation[] memory split = _three(GOOD, BAD, sha256("third"));
        vm.expectRevert(IVerification.NoMajority.selector);
        _challenge(split);
        // Two of five replicas is no majority even if they are all that is shown.
        IVerification.Attestation[] memory a = new IVerification.Attestation[](3);
        a[0] = _att(0, GOOD, 5);
        a[1] = _att(1, GOOD, 5);
        a[2] = _att(2, BAD, 5);
        vm.expectRevert(IVerification.NoMajority.selector);
        vm.prank(prover);
        verification.challenge(hub, UNIT, 5, a);
    }

    function test_challenge_rejectsBadSignaturesOrderAndCounts() public {
        IVerification.Attestation[] memory a = _three(GOOD, BAD, GOOD);
        a[1].digest = GOOD; // signature no longer matches
        vm.expectRevert(abi.encodeWithSelector(IVerification.BadSignature.selector, 1));
        _challenge(a);

        a = _three(GOOD, BAD, GOOD);
        (a[0], a[1]) = (a[1], a[0]);
        vm.expectRevert(abi.encodeWithSelector(IVerification.UnsortedMiners.selector, 1));
        _challenge(a);

        a = _three(GOOD, BAD, GOOD);
        a[2] = a[1]; // duplicate miner
        vm.expectRevert(abi.encodeWithSelector(IVerification.UnsortedMiners.selector, 2));
        _challenge(a);

        vm.expectRevert(IVerification.BadAttestationCount.selector);
        _challenge(new IVerification.Attestation[](1));
        IVerification.Attestation[] memory four = new IVerification.Attestation[](4);
        vm.expectRevert(IVerification.BadAttestationCount.selector);
        _challenge(four);
    }

    function test_challenge_signedReplicaCountIsBinding() public {
        // Signatures made for 3 replicas do not verify as 2 replicas.
        IVerification.Attestation[] memory a = new IVerification.Attestation[](2);
        a[0] = _att(0, GOOD, REPLICAS);
        a[1] = _att(1, BAD, REPLICAS);
        vm.expectRevert(abi.encodeWithSelector(IVerification.BadSignature.selector, 0));
        vm.prank(prover);
        verification.challenge(hub, UNIT, 2, a);
    }

    function test_constructor_rejectsShareAbove100Percent() public {
        vm.expectRevert(IVerification.InvalidConfig.selector);
        new Verification(address(snm), address(dao), 1, 10_001);
    }

    function testFuzz_challenge_majorityOfFive(uint8 pattern) public {
        // Bit i set: miner i signed BAD. Exactly the strict-majority outcomes succeed.
        IVerification.Attestation[] memory a = new IVerification.Attestation[](5);
        uint256 bad;
        for (uint256 i; i < 5; ++i) {
            bool isBad = (pattern >> i) & 1 == 1;
            if (isBad) ++bad;
            a[i] = _att(i, isBad ? BAD : GOOD, 5);
        }
        if (bad == 0 || bad == 5) {
            vm.expectRevert(IVerification.NoMajority.selector);
            vm.prank(prover);
            verification.challenge(hub, UNIT, 5, a);
            return;
        }
        bool badWins = bad >= 3;
        vm.prank(prover);
        verification.challenge(hub, UNIT, 5, a);
        uint256 losers = badWins ? 5 - bad : bad;
        assertEq(snm.balanceOf(prover), losers * STAKE / 2, "prover paid per loser");
        for (uint256 i; i < 5; ++i) {
            bool isBad = (pattern >> i) & 1 == 1;
            (uint256 amount,) = verification.stakeOf(miners[i]);
            assertEq(amount, isBad == badWins ? STAKE : 0, "only losers slashed");
        }
    }
}
