// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {vm} from "../test/base/Vm.sol";
import {SosnaDeploy} from "./SosnaDeploy.sol";

/// @notice Deploys the system to the RPC given to `forge script --rpc-url`, funds test
///         accounts with SNM and writes the deployment JSON the agent reads.
/// @dev Environment:
///      DEPLOYER_KEY     private key that deploys and receives the whole SNM supply (required)
///      FUND_ACCOUNTS    comma-separated addresses to send SNM to (optional)
///      FUND_AMOUNT      SNM wei per funded account (default 1,000,000 SNM)
///      DEPLOYMENT_FILE  output path, relative to contracts/ (default deployments/local.json)
///      VOTING_PERIOD, QUORUM, CONFIRM_WINDOW, UNBONDING_PERIOD override the defaults.
contract Deploy {
    function run() external {
        uint256 key = vm.envUint("DEPLOYER_KEY");
        address deployer = vm.addr(key);
        SosnaDeploy.Params memory p = SosnaDeploy.defaults();
        p.votingPeriod = vm.envOr("VOTING_PERIOD", p.votingPeriod);
        p.quorum = vm.envOr("QUORUM", p.quorum);
        p.confirmWindow = vm.envOr("CONFIRM_WINDOW", p.confirmWindow);
        p.unbondingPeriod = vm.envOr("UNBONDING_PERIOD", p.unbondingPeriod);
        address[] memory accounts = vm.envOr("FUND_ACCOUNTS", ",", new address[](0));
        uint256 amount = vm.envOr("FUND_AMOUNT", uint256(1_000_000e18));

        vm.startBroadcast(key);
        SosnaDeploy.System memory s = SosnaDeploy.deploy(deployer, p);
        for (uint256 i; i < accounts.length; ++i) {
            s.snm.transfer(accounts[i], amount);
        }
        vm.stopBroadcast();

        string memory o = "deployment";
        vm.serializeUint(o, "chainId", block.chainid);
        vm.serializeAddress(o, "deployer", deployer);
        vm.serializeAddress(o, "snm", address(s.snm));
        vm.serializeAddress(o, "dao", address(s.dao));
        vm.serializeAddress(o, "hubFactory", address(s.factory));
        vm.serializeAddress(o, "hubWalletImplementation", s.factory.implementation());
        vm.serializeAddress(o, "whitelist", address(s.whitelist));
        vm.serializeAddress(o, "market", address(s.market));
        string memory json = vm.serializeAddress(o, "verification", address(s.verification));
        vm.writeJson(json, vm.envOr("DEPLOYMENT_FILE", string("deployments/local.json")));
    }
}
